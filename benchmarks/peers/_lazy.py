"""Import checks shared by the peer modules."""

from importlib import import_module


def import_error(module_name: str):
    """None when module_name imports, else the error text (why the engine is skipped)."""
    try:
        import_module(module_name)
    except Exception as exc:  # noqa: BLE001 (any failure to import means: skip this engine)
        return f"{module_name}: {type(exc).__name__}: {exc}"
    return None
