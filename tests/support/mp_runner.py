# Runs firmware test cases under MicroPython (also works under CPython).
# Usage: micropython tests/support/mp_runner.py tests/firmware/fw_mqtt_cases.py [more modules]
# Each argument is a module name (found on sys.path) or a path to a .py file, whose directory is
# put on sys.path. Every `test_*` function is called with no arguments; an exception is a failure.
# The last line printed is exactly "N passed, M failed"; the exit status is 1 if any failed.
# Optional: -k SUBSTRING runs only tests whose "module.name" contains SUBSTRING.
import sys

try:
    import gc
except ImportError:  # pragma: no cover
    gc = None


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


def _add_path(p):
    if p not in sys.path:
        sys.path.insert(0, p)


def _print_exc(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)  # MicroPython
    else:
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__)


def main(argv):
    # The repository root (two up from tests/support/) so that `import firmware...` works.
    here = _dirname(__file__)
    _add_path(here + "/../..")
    selector = None
    names = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-k" and i + 1 < len(argv):
            selector = argv[i + 1]
            i += 2
            continue
        if a.endswith(".py"):
            _add_path(_dirname(a))
            a = a[a.rfind("/") + 1:-3]
        names.append(a)
        i += 1
    passed = failed = 0
    failures = []
    for name in names:
        try:
            mod = __import__(name)
        except Exception as e:
            print("ERROR importing", name)
            _print_exc(e)
            failed += 1
            failures.append(name)
            continue
        tests = sorted(n for n in dir(mod) if n.startswith("test_"))
        for t in tests:
            full = name + "." + t
            # "module.test_name" picks that one case; anything else is a substring filter.
            if selector and (full != selector if "." in selector else selector not in full):
                continue
            fn = getattr(mod, t)
            if not callable(fn):
                continue
            try:
                fn()
            except Exception as e:
                print("FAIL", full)
                _print_exc(e)
                failed += 1
                failures.append(full)
            else:
                print("PASS", full)
                passed += 1
            if gc is not None:
                gc.collect()
    for f in failures:
        print("FAILED:", f)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


sys.exit(main(sys.argv[1:]))
