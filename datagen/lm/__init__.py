"""The language-model layer: role models, DSPy adapters, the embedded model, the rate gate, the per-call deadline,
the spreading of calls over servers, the batch engine and the call log.

`hooks.install` is the one place DSPy's internals are wrapped; making a `RoleModel` calls it, so importing this
package changes nothing in DSPy or the socket module.
"""

from datagen.lm.adapters import holds_invalid_text
from datagen.lm.batch import RequestBook, batch_model, check_batchable
from datagen.lm.calllog import CALL_LOG, CallLog, step_names, truncations
from datagen.lm.errors import BatchRequestError, Deferred
from datagen.lm.failures import BATCH_KINDS, FATAL, UNRECOVERABLE, failure_kind, first_line
from datagen.lm.gate import CallGate, ModelGates, RequestWatcher, Turn, gated
from datagen.lm.hooks import install as install_hooks
from datagen.lm.local import EMBEDDED_MODELS, LOCAL_MODEL
from datagen.lm.names import remember_configured, track_usage
from datagen.lm.roles import (SCAFFOLD_TOKENS, RoleModel, as_role_model, bounded, check_reachable, default_max_tokens,
                              judge_model, role_model, task_model)

__all__ = ["BATCH_KINDS", "BatchRequestError", "CALL_LOG", "CallGate", "CallLog", "Deferred", "EMBEDDED_MODELS",
           "FATAL", "LOCAL_MODEL", "ModelGates", "RequestBook", "RequestWatcher", "RoleModel", "SCAFFOLD_TOKENS",
           "Turn", "UNRECOVERABLE", "as_role_model", "batch_model", "bounded", "check_batchable", "check_reachable",
           "default_max_tokens", "failure_kind", "first_line", "gated", "holds_invalid_text", "install_hooks",
           "judge_model", "remember_configured", "role_model", "step_names", "task_model", "track_usage", "truncations"]
