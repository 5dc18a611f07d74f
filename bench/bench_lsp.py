"""`archc lsp` as an editor sees it: from `didChange` to `publishDiagnostics`, over a real connection.

    python bench/bench_lsp.py            # resnet101 (40 edits) and a 10,000-layer spec (10 edits)
    python bench/bench_lsp.py --quick    # fewer edits

The server runs as editors start it (`python -m archc lsp`, stdio); the client is
pygls's. Each edit changes one layer's K (so the shapes after it change) and waits
for the diagnostics of that version; then the inlay hints of the whole document are
requested, as an editor does after a change. Target (issue 11): resnet101's median
from didChange to publishDiagnostics under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_specs  # noqa: E402


async def measure(name: str, text: str, edits: int) -> None:
    client = LanguageClient("bench", "1")
    published: dict[int | None, float] = {}
    arrived = asyncio.Event()

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: T.PublishDiagnosticsParams) -> None:
        published[params.version] = time.perf_counter()
        arrived.set()

    await client.start_io(sys.executable, "-m", "archc", "lsp")
    await client.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities()))
    client.initialized(T.InitializedParams())
    uri = f"file:///bench/{name}.arch"
    t0 = time.perf_counter()
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=uri, language_id="arch", version=1, text=text)
        )
    )
    while 1 not in published:
        arrived.clear()
        await arrived.wait()
    opened = published[1] - t0
    # the first `K=<n>` of a conv outside comments: change it back and forth
    first = re.search(r"^[^#\n]*\bconv K=(\d+)", text, re.M)
    assert first is not None
    start, end = first.span(1)
    k = int(first.group(1))
    diag_ms, hints_ms = [], []
    whole = T.Range(
        start=T.Position(line=0, character=0), end=T.Position(line=text.count("\n") + 1, character=0)
    )
    for i in range(edits):
        version = i + 2
        edited = text[:start] + str(k + (version % 2)) + text[end:]
        sent = time.perf_counter()
        client.text_document_did_change(
            T.DidChangeTextDocumentParams(
                text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[T.TextDocumentContentChangeWholeDocument(text=edited)],
            )
        )
        while version not in published:
            arrived.clear()
            await arrived.wait()
        diag_ms.append((published[version] - sent) * 1000)
        hints = await client.text_document_inlay_hint_async(
            T.InlayHintParams(text_document=T.TextDocumentIdentifier(uri=uri), range=whole)
        )
        hints_ms.append((time.perf_counter() - sent) * 1000)
        assert hints, "no inlay hints"
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    lines = text.count("\n") + 1
    print(
        f"{name:>14}: {lines:>6} lines  open {opened * 1000:7.1f} ms  "
        f"didChange->publishDiagnostics median {statistics.median(diag_ms):7.1f} ms "
        f"(min {min(diag_ms):.1f}, max {max(diag_ms):.1f}, n={len(diag_ms)})  "
        f"+ inlay hints median {statistics.median(hints_ms):7.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    resnet = (ROOT / "specs" / "resnet101.arch").read_text()
    asyncio.run(measure("resnet101", resnet, 10 if args.quick else 40))
    asyncio.run(measure("flat 10k", gen_specs.flat_spec(10_000), 3 if args.quick else 10))


if __name__ == "__main__":
    main()
