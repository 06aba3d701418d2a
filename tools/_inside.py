"""The two small programs run_python starts inside the sandbox (tools/code.py): the runner of the model's code,
and the sandbox's PID 1 that supervises it and hands its files back."""

# Runs the user's file as __main__. `-S` skips `site`, which is what defines exit() and quit().
RUNNER = """\
import builtins, sys, types
builtins.exit = builtins.quit = sys.exit
path = sys.argv[1]
del sys.argv[0]
with open(path, encoding="utf-8") as f:
    source = f.read()
main = sys.modules["__main__"] = types.ModuleType("__main__")
main.__file__ = path
exec(compile(source, path, "exec"), main.__dict__)
"""

# PID 1 of the sandbox. It starts the code, waits for it, kills whatever the code left running (as PID 1 it
# can: kill(-1) reaches every other process of the namespace), then sends parley the code's exit status and
# the files under out/ on its descriptor. Closing its stdin (parley's timeout) stops the code early. It runs
# with the code's own rights, so parley trusts nothing it sends: see _unpack and _store.
SUPERVISOR = """\
import json, os, signal, stat, sys, threading
out_fd, max_files, max_bytes = (int(a) for a in sys.argv[1:4])
python, runner, script, work = sys.argv[4:8]
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the code cannot trace this or open its fds
except Exception:
    pass
env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HOME": work}
child = os.fork()
if child == 0:
    try:
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.execve(python, [python, "-I", "-S", "-B", "-c", runner, script], env)
    finally:
        os._exit(127)

def stop():
    while os.read(0, 4096):
        pass
    os.kill(-1, signal.SIGKILL)

threading.Thread(target=stop, daemon=True).start()
status = None
while status is None:
    try:
        pid, st = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if pid == child:
        status = st
while True:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        break
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        pass
rc = None if status is None else -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
out = os.path.join(work, "out")
files, data, skipped, total = [], [], 0, 0
for folder, dirs, names in os.walk(out):
    dirs.sort()
    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise ValueError
            if len(files) >= max_files or total + st.st_size > max_bytes:
                raise ValueError
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
                content = f.read(st.st_size + 1)
            if len(content) != st.st_size:
                raise ValueError
        except (OSError, ValueError):
            skipped += 1
            continue
        files.append([os.path.relpath(path, out), len(content)])
        data.append(content)
        total += len(content)
with os.fdopen(out_fd, "wb") as w:
    w.write(json.dumps({"rc": rc, "skipped": skipped, "files": files}).encode() + b"\\n")
    for content in data:
        w.write(content)
"""
