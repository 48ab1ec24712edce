"""python app.py: start SARD Studio on 127.0.0.1:7860 with the default checkpoint.

Options: --host, --port, --checkpoint DIR, --data DATASET_ROOT (a gallery of normal images, real defects
to compare with and the real-mask bank; without it the checkpoint's own bank), --export-root DIR,
--queue-size N, --max-upload-mb N.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: nothing goes out

T0 = time.perf_counter()
MAX_QUEUE = 1000           # jobs waiting for the model (each may hold a 50-megapixel image)
MAX_UPLOAD_MB = 10240


def parse_args(argv=None) -> argparse.Namespace:
    from sard.store.model_folder import DEFAULT_CHECKPOINT
    p = argparse.ArgumentParser(prog="python app.py", description="SARD Studio: paint a mask, synthesize defects, export pairs.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model folder (config.json + model.safetensors) or a shipped model's name")
    p.add_argument("--data", help="data set root: gallery of its normal images, real defects beside the results, its "
                                     "real-mask bank (default: the checkpoint's own bank)")
    p.add_argument("--export-root", default="exports", help="where curated sets are exported, a folder per session (default ./exports)")
    p.add_argument("--queue-size", type=int, default=8, help="jobs waiting for the model before new ones are refused")
    p.add_argument("--max-upload-mb", type=int, default=64, help="largest accepted upload")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    return p.parse_args(argv)


def port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before the model loads."""
    import socket

    from sard.io import SardInputError
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise SardInputError(f"--port {port}: cannot listen on {host} ({e.strerror}); "
                             f"choose another --port or stop what uses it") from None


def check_flags(args: argparse.Namespace) -> None:
    """The numbers and the device, before gradio or the model loads: SardInputError naming the flag."""
    from sard.devices import pick_device
    from sard.validate import whole_number
    whole_number("--port", args.port, 1, 65535)
    whole_number("--queue-size", args.queue_size, 1, MAX_QUEUE)
    whole_number("--max-upload-mb", args.max_upload_mb, 1, MAX_UPLOAD_MB)
    if args.device is not None:
        pick_device(args.device)


def launch(args: argparse.Namespace, block: bool = True):
    from pathlib import Path

    from sard.io import SardInputError
    from sard.store.model_folder import resolve_checkpoint
    from sard.validate import writable_folder
    from ui.actions import Studio
    from ui.layout import CSS, build_studio

    try:
        check_flags(args)
        writable_folder("--export-root", args.export_root)
        port_free(args.host, args.port)
        studio = Studio(resolve_checkpoint(args.checkpoint), Path(args.export_root), Path(args.data) if args.data else None,
                        device=args.device)
    except SardInputError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    demo = build_studio(studio)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=not block, quiet=not block,
                ssr_mode=False, share=False, css=CSS, max_file_size=f"{args.max_upload_mb}mb", show_error=True)
    # No allowed_paths: the export root is never served by path (one session could fetch another's
    # pairs); the browser gets only the files the studio hands it (ui.files, unguessable names).
    return demo


def main(argv=None) -> int:
    """Bad flags are refused (exit 2) before gradio is imported; then the studio serves until Ctrl+C."""
    from sard.io import SardInputError
    a = parse_args(argv)
    try:
        check_flags(a)
    except SardInputError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    demo = launch(a, block=False)
    print(f"SARD Studio ready at http://{a.host}:{a.port} in {time.perf_counter() - T0:.1f} s "
          f"(Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
