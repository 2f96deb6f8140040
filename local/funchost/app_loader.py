"""Import an app's `function_app` module and list its functions, as the Python worker does."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import azure.functions as func

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")


class AppLoadError(Exception):
    """The app could not be imported, or declares something the local host cannot run."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: Any  # an azure.functions.decorators binding: .type, .name and trigger-specific fields
    user_function: Callable[..., Any]
    has_return: bool = False  # an output binding named $return (an HTTP function's response)


def load_functions(app_dir: Path) -> list[FunctionSpec]:
    """Import DIR/function_app.py and return its functions.

    Raises AppLoadError when the import raises (e.g. the app's settings validation), when the
    module holds no FunctionApp, or when a function uses a trigger or binding not supported here.
    """
    module = _import_function_app(app_dir)
    app = next((value for value in vars(module).values() if isinstance(value, func.FunctionApp)), None)
    if app is None:
        raise AppLoadError(f"{module.__file__} defines no azure.functions.FunctionApp instance")
    # get_functions() may be called once per app object: a second call reports duplicate names.
    return [_spec(function) for function in app.get_functions()]


def _import_function_app(app_dir: Path) -> Any:
    path = app_dir / "function_app.py"
    if not path.is_file():
        raise AppLoadError(f"{path} does not exist")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location("function_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # A fresh module every time: get_functions() works once per FunctionApp object. An in-process
    # caller (a test, a benchmark) keeps whatever `function_app` it had imported itself.
    previous = sys.modules.get("function_app")
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop("function_app")
        raise AppLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if previous is not None:
            sys.modules["function_app"] = previous
    return module


def _spec(function: Any) -> FunctionSpec:
    name = function.get_function_name()
    trigger = function.get_trigger()
    if trigger.type not in SUPPORTED_TRIGGERS:
        raise AppLoadError(f"function {name!r}: trigger {trigger.type!r} is not supported locally")
    user_function = function.get_user_function()
    extra = [p for p in inspect.signature(user_function).parameters if p != trigger.name]
    if extra:
        raise AppLoadError(f"function {name!r}: parameters {extra} are bindings the local host does not supply")
    has_return = any(binding.name == "$return" for binding in function.get_bindings())
    return FunctionSpec(name=name, trigger=trigger, user_function=user_function, has_return=has_return)
