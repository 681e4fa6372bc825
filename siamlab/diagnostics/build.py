"""The hooks of a run, built by name from the registry."""

from collections.abc import Sequence

from siamlab.diagnostics.hooks import Hook, HookContext
from siamlab.diagnostics.registry import resolve_hook


def build_hooks(names: Sequence[str], ctx: HookContext) -> list[Hook]:
    """The hooks named ``names`` (``diagnostics.hooks``) for a run, in that order.

    Conditional hooks whose ``build`` returns None (e.g. ``eta_stats`` without eta
    targets) are left out.

    Args:
        names: registered hook names (validated by the config).
        ctx: what the hooks are built from.
    """
    built = (resolve_hook(name).build(ctx) for name in names)
    return [hook for hook in built if hook is not None]


def default_hooks(ctx: HookContext) -> list[Hook]:
    """The hooks ``ctx.cfg.hooks`` names."""
    return build_hooks(ctx.cfg.hooks, ctx)
