"""The workspace: its configuration (datagen.toml), its pipelines (programs, signatures, metric suites) and
compiled programs."""

from datagen.workspace.config import (CONFIG_FILE, ChunkingSettings, Config, MetricSettings, ModelSettings, ROLES,
                                      Role, find_workspace, load_config)
from datagen.workspace.pipelines import builtin_workspace, find_pipelines, is_builtin, load_metric_suite, load_program
from datagen.workspace.compiled import (COMPILED_DIR, evaluation_path, list_compiled, load_compiled, read_manifest,
                                        resolve_program, save_compiled)

__all__ = ["COMPILED_DIR", "CONFIG_FILE", "ChunkingSettings", "Config", "MetricSettings", "ModelSettings", "ROLES",
           "Role", "builtin_workspace", "evaluation_path", "find_pipelines", "find_workspace", "is_builtin",
           "list_compiled", "load_compiled", "load_config", "load_metric_suite", "load_program", "read_manifest",
           "resolve_program", "save_compiled"]
