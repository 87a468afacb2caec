"""The workspace: its configuration (datagen.toml), its pipelines (programs, signatures, metric suites) and
compiled programs."""

from datagen.workspace.config import (CONFIG_FILE, ROLES, WORKSPACE_VARIABLE, ChunkingSettings, Config,
                                      DiversityBarSettings, MetricSettings, ModelSettings, Role, SplitSettings, find_workspace, flag_settings,
                                      known_variables, load_config, role_variable, unknown_variables, unpriced_half)
from datagen.workspace.pipelines import (WORKSPACE_PACKAGES, builtin_workspace, code_fingerprint, find_pipelines,
                                         is_builtin, load_metric_suite, load_program, metric_suite_file,
                                         pipeline_root, search_space, signature_parts)
from datagen.workspace.compiled import (COMPILED_DIR, MANIFEST_SUFFIX, compiled_state, demo_fault, evaluation_path,
                                        list_compiled, load_compiled, manifest_path, read_manifest, read_state,
                                        report_path, resolve_program, save_compiled)

__all__ = ["COMPILED_DIR", "CONFIG_FILE", "MANIFEST_SUFFIX", "ROLES", "WORKSPACE_PACKAGES", "WORKSPACE_VARIABLE",
           "ChunkingSettings", "Config", "DiversityBarSettings", "MetricSettings", "ModelSettings", "Role", "SplitSettings",
           "builtin_workspace", "code_fingerprint", "compiled_state", "demo_fault", "evaluation_path",
           "find_pipelines", "find_workspace", "flag_settings", "is_builtin", "known_variables", "list_compiled",
           "load_compiled", "load_config", "load_metric_suite", "load_program", "manifest_path", "metric_suite_file",
           "pipeline_root",
           "read_manifest", "read_state", "report_path", "resolve_program", "role_variable", "save_compiled",
           "search_space", "signature_parts", "unknown_variables", "unpriced_half"]
