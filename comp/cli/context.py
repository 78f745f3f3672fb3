"""The object every command receives through ``typer.Context.obj``: the global options, parsed once
per invocation by the app's callback, so no command reads module-level state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from comp.errors import CompError

if TYPE_CHECKING:
    from comp.workspace import CompSettings, Workspace

FAN_OUT = "Fan-out (executors)"  # the help panel of the executor options


@dataclass
class Application:
    """What `comp --workspace DIR COMMAND` was given; finds the workspace when a command first asks."""

    workspace_dir: Path | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            from comp.workspace import Workspace

            self._workspace = Workspace.find(self.workspace_dir)
        return self._workspace

    def settings_if_any(self) -> CompSettings | None:
        """comp.yaml's settings, or None outside a workspace unless --workspace named one."""
        try:
            return self.workspace.load_settings()
        except CompError:
            if self.workspace_dir is not None:
                raise
            return None


def application(ctx: typer.Context) -> Application:
    app = ctx.find_object(Application)
    return app if app is not None else ctx.ensure_object(Application)


def workspace(ctx: typer.Context) -> Workspace:
    return application(ctx).workspace
