"""Run moto's AWS emulator on 127.0.0.1 (or --host), single-threaded, for panka's tests.

Used by scripts/aws-emulator; not meant to be started by hand. moto's backends are not safe under
concurrent requests, so the server handles one request at a time (werkzeug, threaded=False).
The patches in scripts/moto_patches/ (calls real AWS has and the pinned moto lacks) are installed
before the app is created; they are read from this work tree at every start, not installed into
the venv, so changing them needs no reinstall.

Options:
  --host ADDR         address to listen on (default 127.0.0.1; tests/e2e-kubernetes.sh runs this
                      script in a pod, on 0.0.0.0)
  --port N            port to listen on (default 0: let the kernel pick a free one)
  --endpoint-file F   write the endpoint URL to F once the socket is bound (written atomically)
  --watch-pid PID     exit when process PID is gone (so a test binary never leaks an emulator)
"""

import argparse
import os
import sys
import threading
import time


def _watch(pid: int) -> None:
    # A test binary has no destructor for its shared emulator: poll its pid and leave with it.
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--endpoint-file")
    parser.add_argument("--watch-pid", type=int)
    args = parser.parse_args()

    # Imported late so `--help` works without the venv.
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    import moto_patches  # beside this script, so on sys.path when it runs

    moto_patches.apply()
    app = DomainDispatcherApplication(create_backend_app)
    # Binding here (port 0 = any free port) and reporting the bound port avoids the race of
    # picking a "free" port first and binding it later.
    server = make_server(args.host, args.port, app, threaded=False)
    endpoint = f"http://{args.host}:{server.server_port}"

    if args.endpoint_file:
        tmp = f"{args.endpoint_file}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(endpoint + "\n")
        os.replace(tmp, args.endpoint_file)
    print(endpoint, flush=True)

    if args.watch_pid:
        threading.Thread(target=_watch, args=(args.watch_pid,), daemon=True).start()

    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
