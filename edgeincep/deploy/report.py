"""What `edgeincep deploy` prints: upload progress on stderr, the outcome as small tables on stdout."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from edgeincep.console import err, note, out


@contextlib.contextmanager
def upload_progress(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(on_start(total_bytes), on_bytes(n)) callbacks driving one byte-progress bar, shown from on_start on."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=err, transient=False)
    task = bar.add_task(f"upload to {escape(label)}", total=None)

    def start(total: int) -> None:
        bar.update(task, total=total)
        bar.start()

    def advance(n: int) -> None:
        bar.advance(task, n)

    try:
        yield start, advance
    finally:
        bar.stop()  # a no-op when the upload never started: a refusal prints no empty bar


def print_deploy(result: dict) -> None:
    for line in result.get("notes", []):
        note(escape(line))
    table = Table(title=f"deployed {escape(result['name'])} to {escape(result['user'])}@{escape(result['host'])}",
                  show_header=False)
    table.add_column("")
    table.add_column("")
    state = "unchanged (already current, re-verified)" if result.get("unchanged") else "switched in"
    for key, value in (("device folder", result["path"]), ("current", f"{result['current']} ({state})"),
                       ("previous (--rollback)", result.get("previous") or "none"),
                       ("files verified on the device", str(result.get("files", "?")))):
        table.add_row(key, escape(str(value)))
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
    for col in ("", "release", "verified", "files not in the manifest"):
        table.add_column(col)
    for which in ("current", "previous"):
        release = result.get(which)
        if release is None:
            table.add_row(which, "none", "", "")
            continue
        problems = result.get(f"{which}_problems") or []
        table.add_row(which, escape(release), "[green]yes[/]" if not problems else f"[bold red]no[/]: "
                      f"{escape('; '.join(problems[:3]))}", escape(", ".join(result.get(f"{which}_extras") or [])))
    out.print(table)
