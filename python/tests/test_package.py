"""The package's names: what a star import brings, and old names kept for compatibility."""

from __future__ import annotations

import builtins
from typing import Any, Dict

import picker_client


def test_a_star_import_leaves_the_builtin_permission_error_alone() -> None:
    namespace: Dict[str, Any] = {}
    exec("from picker_client import *", namespace)
    assert namespace.get("PermissionError", builtins.PermissionError) is builtins.PermissionError
    # So an ordinary OS error (here raised by hand: root may open anything) is still caught.
    exec(
        "import builtins\n"
        "try:\n"
        "    raise builtins.PermissionError(13, 'denied by the OS')\n"
        "except PermissionError as e:\n"
        "    caught = e\n",
        namespace,
    )
    assert type(namespace["caught"]) is builtins.PermissionError
    assert "NoPermission" in namespace and "PickerError" in namespace


def test_no_permission_is_both_ours_and_the_builtin_and_keeps_its_old_name() -> None:
    assert issubclass(picker_client.NoPermission, picker_client.PickerError)
    assert issubclass(picker_client.NoPermission, builtins.PermissionError)
    assert picker_client.PermissionError is picker_client.NoPermission
    assert "PermissionError" not in picker_client.__all__
    # No name of ours hides a built-in after a star import.
    assert [name for name in picker_client.__all__ if hasattr(builtins, name)] == []
