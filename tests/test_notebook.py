"""Jupyter: HTML views of every result, snapshots as a DataFrame, totals, the example notebook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import sql_dump

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_snapshot_html_shows_items_sizes_dedup_and_escaped_tags(repo):
    repo.ingest(sql_dump(20_000, 1), name="db.sql")
    snap = repo.ingest(
        sql_dump(20_000, 1), name="db.sql", tags={"note": "<script>alert(1)</script>"}
    )
    page = snap._repr_html_()
    assert snap.id in page and "db.sql" in page
    assert "100.0%" in page  # the second copy is fully deduplicated
    assert "MiB" in page or "KiB" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_results_render_as_tables(repo, repo_path):
    for i in range(3):
        repo.ingest(os.urandom(2 << 20), name=f"v{i}.bin")
    verify = repo.verify("full")
    assert "Verify (full): ok" in verify._repr_html_()
    prune = repo.prune(keep_last=1, dry_run=True)
    assert "Prune (dry run)" in prune._repr_html_() and "would remove" in prune._repr_html_()
    pack = next((repo_path / "packs" / "data").rglob("*.pack"))
    pack.unlink()
    broken = repo.verify("standard")
    page = broken._repr_html_()
    assert "errors" in page and pack.stem in page
    repair = repo.repair()
    assert "Repair: everything saved" in repair._repr_html_()
    page = repo._repr_html_()
    assert str(repo_path) in page and "aes-256-gcm" in page and "v2.bin" in page
    assert "Repository totals" in repo.stats()._repr_html_()


def test_stats_count_deduplication_and_compression(repo):
    empty = repo.stats()
    assert (empty.snapshots, empty.unique_chunks, empty.dedup_ratio) == (0, 0, 1.0)
    dump = sql_dump(60_000, 2)
    repo.ingest(dump, name="a.sql")
    repo.ingest(dump, name="a.sql")
    st = repo.stats()
    assert st.snapshots == 2 and st.original_bytes == 2 * len(dump)
    assert st.unique_bytes == len(dump)
    assert st.dedup_ratio == pytest.approx(2.0)
    assert st.compression_ratio > 2.0 and st.stored_bytes < len(dump) / 2
    assert st.packs >= 1 and st.pack_bytes >= st.stored_bytes and st.parity_files >= 1
    assert st.to_dict()["repository_bytes"] == st.pack_bytes + st.parity_bytes


def test_snapshots_as_a_dataframe(repo):
    pd = pytest.importorskip("pandas")
    assert ca.to_dataframe([]).empty
    for i in range(3):
        repo.ingest(sql_dump(5_000 + i, i), name="db.sql", tags={"db": "x", "v": str(i)})
    frame = repo.snapshots_frame()
    assert list(frame.index) == [s.id for s in repo.list_snapshots()]
    assert frame["tag:v"].tolist() == ["0", "1", "2"]
    assert str(frame["created_at"].dtype).startswith("datetime64") and frame["created_at"].dt.tz
    assert (frame["original_size"] > 0).all() and frame["items"].iloc[0] == "db.sql"
    assert isinstance(frame, pd.DataFrame)
    assert len(repo.snapshots_frame(tags={"v": "1"})) == 1


def test_the_example_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(DOCS / "example.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    html = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "text/html" in out.get("data", {})
    ]
    assert any("Snapshot" in h for h in html), "a snapshot renders as HTML"
    assert any("Verify (full): ok" in h for h in html)
    assert any("<table" in h and "tag:version" in h for h in html), "the DataFrame renders"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
