"""Scaffolding: `datagen init` (a workspace, datagen.scaffold.workspace) and `datagen new` (a pipeline,
datagen.scaffold.pipeline), whose files run as they are written and never overwrite one."""

from datagen.scaffold.pipeline import scaffold
from datagen.scaffold.workspace import init_workspace

__all__ = ["init_workspace", "scaffold"]
