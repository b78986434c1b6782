"""What `edgeincep deploy` prints: upload progress on stderr, the outcome as small tables on stdout."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from edgeincep.console import err, note, out


@contextlib.contextmanager
def upload_progress(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None], Callable[[str], None]]]:
    """(on_start(total_bytes), on_bytes(n), on_stage(text)) callbacks: one byte-progress bar, shown from on_start
    on, then a spinner naming what the device is doing (setup, check)."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=err, transient=False)
    task = bar.add_task(f"upload to {escape(label)}", total=None)
    spinner: list = []

    def start(total: int) -> None:
        bar.update(task, total=total)
        bar.start()

    def advance(n: int) -> None:
        bar.advance(task, n)

    def stage(text: str) -> None:
        bar.stop()
        if spinner:
            spinner[0].update(f"{escape(label)}: {escape(text)}")
        else:
            spinner.append(err.status(f"{escape(label)}: {escape(text)}"))
            spinner[0].start()

    try:
        yield start, advance, stage
    finally:
        bar.stop()  # a no-op when the upload never started: a refusal prints no empty bar
        if spinner:
            spinner[0].stop()


def print_deploy(result: dict) -> None:
    for line in result.get("notes", []):
        note(escape(line))
    table = Table(title=f"deployed {escape(result['name'])} to {escape(result['user'])}@{escape(result['host'])}",
                  show_header=False)
    table.add_column("")
    table.add_column("", overflow="fold")  # paths in full: they are what the user types on the device
    state = "unchanged (already current, re-verified)" if result.get("unchanged") else "switched in"
    for key, value in (("device folder", result["path"]), ("current", f"{result['current']} ({state})"),
                       ("previous (--rollback)", result.get("previous") or "none"),
                       ("files verified on the device", str(result.get("files", "?")))):
        table.add_row(key, escape(str(value)))
    setup = result.get("setup")
    if setup:
        how = "reused" if setup.get("reused") else f"made in {setup.get('seconds', 0):.0f} s"
        src = "the bundle's wheels" if setup.get("source") == "wheels" else "the device's package index"
        table.add_row("runtime", escape(f"{setup['python']} ({how}, from {src}; Python {setup.get('version')})"))
        table.add_row("run it", escape(f"{setup['python']} {result['path']}/current/run.py IMAGE"))
    out.print(table)
    if "check" in result:
        print_check(result["check"])


def print_check(check: dict, limit: int = 20) -> None:
    table = Table(title=f"--check on the device ({escape(str(check.get('backend') or 'runner'))}): "
                        f"{check['images'] - check['flipped']}/{check['images']} top-1 equal, "
                        f"logits max |diff| {check['max_abs_diff']:.3g}")
    for col in ("image", "host top-1", "device top-1", "max |diff|"):
        table.add_column(col, justify="left" if col == "image" else "right")
    rows = sorted(check["rows"], key=lambda r: (r["host"] == r["device"], r["image"]))[:limit]
    for r in rows:
        same = r["host"] == r["device"]
        table.add_row(escape(r["image"]), str(r["host"]), f"{'' if same else '[bold red]'}{r['device']}",
                      f"{r['max_abs_diff']:.3g}")
    out.print(table)


def print_rollback(result: dict) -> None:
    out.print(f"[green]rolled back[/] {escape(result['name'])} on {escape(result['user'])}@{escape(result['host'])}: "
              f"current is {escape(str(result['current']))} again (was {escape(str(result.get('rolled_back_from')))}; "
              "--rollback again returns to it)")


def print_status(result: dict) -> None:
    where = f"{result['user']}@{result['host']}:{result['path']}"
    table = Table(title=f"{escape(result['name'])} on {escape(where)}")
    for col in ("", "release", "verified", "files not in the manifest", "runtime"):
        table.add_column(col)
    for which in ("current", "previous"):
        release = result.get(which)
        if release is None:
            table.add_row(which, "none", "", "", "")
            continue
        problems = result.get(f"{which}_problems") or []
        runtime = (result.get(f"{which}_runtime") or {}).get("python") or "the device's Python (no --setup)"
        table.add_row(which, escape(release), "[green]yes[/]" if not problems else f"[bold red]no[/]: "
                      f"{escape('; '.join(problems[:3]))}", escape(", ".join(result.get(f"{which}_extras") or [])),
                      escape(runtime))
    out.print(table)
