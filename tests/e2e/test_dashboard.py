"""Every view of the dashboard in a real browser against a real aggregator.

The data (seed.py): in the last hour ``parse_json`` is 50% of CPU (10% the hour
before), ``render_template`` 20% (50% before); ``read`` is the busiest syscall.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from ui_session import Session

from interop_files import INTEROP, needs_interop


def query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def test_overview_shows_agents_health_and_tops(ui: Session) -> None:
    page = ui.open("/")
    agents = page.get_by_test_id("agents-table")
    agents.get_by_text("agent-web-1").wait_for()
    assert "agent-web-2" in agents.inner_text()
    assert "service=api" in agents.inner_text()
    # the health card fills in from its own request: wait for it rather than look once
    page.get_by_test_id("health").get_by_text("ok", exact=True).wait_for()
    top = page.get_by_test_id("card-top")
    top.get_by_text("json_tokenize").wait_for()
    assert "30.0%" in top.inner_text()
    page.get_by_test_id("card-syscalls").get_by_text("read", exact=True).wait_for()
    page.get_by_test_id("card-locks").get_by_text("0x7f3a2c001040").first.wait_for()
    ui.shot("overview")
    # each card links to its view, keeping the filters
    top.get_by_role("link", name="Flamegraph →").click()
    page.wait_for_url(re.compile(r"/flamegraph"))
    ui.frames()


def test_flamegraph_tooltip_zoom_and_search(ui: Session) -> None:
    page = ui.open("/flamegraph")
    api = {f["name"]: f for f in ui.api("/api/v1/top", limit=100)["functions"]}
    text = ui.hover("parse_json")
    assert "app" in text  # module
    pct = f"{api['parse_json']['total_pct']:.2f}%"
    assert pct == "50.00%" and pct in text
    assert "Self" in text and "Total" in text
    ui.shot("flamegraph")

    # click to zoom: the frame fills the width and the breadcrumb leads back
    width = page.locator("[data-testid=flame-main] canvas.flame-canvas").bounding_box()["width"]
    f = ui.frame("parse_json")
    page.mouse.click(f["cx"], f["cy"])
    page.wait_for_url(re.compile(r"focus="))
    assert query(page)["focus"][0].endswith(";handle_request;parse_json")
    crumbs = page.get_by_test_id("breadcrumb")
    crumbs.get_by_text("parse_json").wait_for()
    page.wait_for_function(
        "w => { const f = document.querySelector('[data-testid=flame-main] canvas')"
        ".apertureFrames().find(f => f.name === 'parse_json'); return f && f.w >= w - 1; }",
        arg=width,
    )
    assert not any(f["name"] == "render_template" for f in ui.frames())
    ui.shot("flamegraph-zoomed")
    crumbs.get_by_role("button", name="handle_request").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=flame-main] canvas')"
        ".apertureFrames().some(f => f.name === 'render_template')"
    )
    # the back button restores the zoom (state is in the URL)
    page.go_back()
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=flame-main] canvas')"
        ".apertureFrames().some(f => f.name === 'render_template')"
    )
    crumbs.get_by_role("button", name="reset zoom").click()

    # search: matches keep their colour, the rest is dimmed; the share is shown
    before = ui.pixel("json_tokenize")
    page.get_by_test_id("search").fill("tokeni")
    info = page.get_by_test_id("match-info")
    info.wait_for()
    assert f"{api['json_tokenize']['total_pct']:.2f}% of total" in info.inner_text()
    page.wait_for_url(re.compile(r"search=tokeni"))
    page.wait_for_timeout(100)
    assert ui.pixel("json_tokenize") == before
    assert ui.pixel("render_template") == (0xE4, 0xE4, 0xE7)  # dimmed
    ui.shot("flamegraph-search")


def test_python_frames_have_their_own_colour_and_show_file_and_line(ui: Session) -> None:
    page = ui.open("/flamegraph")
    legend = page.get_by_test_id("kind-legend")
    legend.wait_for()
    assert [k.strip() for k in legend.inner_text().split()] == ["user", "python", "kernel"]
    swatch = legend.locator(".kind-python .swatch").evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    text = ui.hover("Scheduler.tick")
    # lines 41 (20 samples) and 44 (10) are one frame, shown with its hottest line
    assert "/srv/api/scheduler.py:41" in text and "python" in text
    assert "run_forever" in ui.hover("run_forever") and "scheduler.py:88" in ui.hover("run_forever")
    r, g, b = ui.pixel("Scheduler.tick")
    assert b > g + 40 and r > g, f"Python frames are violet, got rgb{(r, g, b)}"
    for native in ("poll_loop", "vfs_read"):  # user and kernel frames are not
        nr, ng, nb = ui.pixel(native)
        assert not (nb > ng + 40 and nr > ng), f"{native} is drawn rgb{(nr, ng, nb)}"
    sr, sg, sb = (int(c) for c in re.findall(r"\d+", swatch)[:3])
    assert sb > sg + 40 and sr > sg, f"the legend's python swatch is {swatch}"
    ui.shot("flamegraph-python")


def test_top_table_invert_and_sandwich(ui: Session) -> None:
    page = ui.open("/flamegraph")
    table = page.get_by_test_id("top-table")
    # hovering a frame finds its row in the table
    ui.hover("escape_html")
    table.locator("tr.hovered", has_text="escape_html").wait_for()
    # clicking a row highlights that function's frames
    table.get_by_text("malloc", exact=True).click()
    page.wait_for_url(re.compile(r"fn=malloc"))
    assert "malloc" in page.get_by_test_id("match-info").inner_text()
    page.wait_for_timeout(100)
    assert ui.pixel("gc_collect") == (0xE4, 0xE4, 0xE7)
    assert ui.pixel("malloc") != (0xE4, 0xE4, 0xE7)

    # sandwich: callers above, callees below
    table.get_by_role("button", name="Sandwich view of parse_json").click()
    page.get_by_test_id("sandwich").wait_for()
    callers = [f["name"] for f in ui.frames("flame-callers")]
    callees = [f["name"] for f in ui.frames("flame-callees")]
    assert callers[0] == "parse_json" and "handle_request" in callers and "main" in callers
    assert callees[0] == "parse_json" and {"json_tokenize", "malloc"} <= set(callees)
    assert "render_template" not in callers + callees
    text = ui.hover("json_tokenize", "flame-callees")
    assert "30.00%" in text  # share of the whole profile, not of the sandwich
    ui.shot("flamegraph-sandwich")
    page.get_by_role("button", name="close sandwich").click()

    # invert: leaf functions on top, weighted by self value
    page.get_by_label("Invert (bottom-up)").check()
    page.wait_for_url(re.compile(r"invert=1"))
    frames = ui.frames("flame-inverted")
    row2 = sorted((f for f in frames if f["y"] == 18), key=lambda f: -f["w"])
    assert row2[0]["name"] == "json_tokenize"  # 30%: the widest leaf
    assert "30.00%" in ui.hover("json_tokenize", "flame-inverted")
    ui.shot("flamegraph-inverted")


def test_lock_type_switch(ui: Session) -> None:
    page = ui.open("/flamegraph")
    ui.frames()
    page.get_by_role("button", name="Lock wait").click()
    page.wait_for_url(re.compile(r"type=lock"))
    page.wait_for_function(
        "() => { const c = document.querySelector('[data-testid=flame-main] canvas');"
        " return c && c.apertureFrames().some(f => f.name === 'cache_get'); }"
    )
    text = ui.hover("cache_get")
    fg = ui.api("/api/v1/flamegraph", type="lock")
    names, nodes = fg["names"], fg["nodes"]
    i = next(i for i, n in enumerate(nodes["name"]) if names[n] == "cache_get")
    assert f"{100 * nodes['total'][i] / fg['total']:.2f}%" in text
    assert f"{nodes['total'][i] / 1e9:.2f} s" in text  # wait time, in seconds


def test_off_cpu_is_a_type_of_the_switch_and_shows_time(ui: Session) -> None:
    """The registry's new type reaches the dashboard with no code of its own there."""
    page = ui.open("/flamegraph")
    ui.frames()
    page.get_by_role("button", name="Off-CPU").click()
    page.wait_for_url(re.compile(r"type=offcpu"))
    page.wait_for_function(
        "() => { const c = document.querySelector('[data-testid=flame-main] canvas');"
        " return c && c.apertureFrames().some(f => f.name === '[off-CPU: sleeping]'); }"
    )
    fg = ui.api("/api/v1/flamegraph", type="offcpu")
    names, nodes = fg["names"], fg["nodes"]
    i = next(i for i, n in enumerate(nodes["name"]) if names[n] == "read_body")
    text = ui.hover("read_body")
    assert f"{100 * nodes['total'][i] / fg['total']:.2f}%" in text
    minutes = nodes["total"][i] / 60e9
    assert f"{minutes:.0f}." in text and " min" in text, (minutes, text)  # time, not a count
    assert abs(nodes["total"][i] / fg["total"] - 0.75) < 1e-9  # 3 s of every 4 s off CPU
    page = ui.open("/timeline")
    page.get_by_test_id("chart-offcpu").locator("polyline").first.wait_for(state="attached")
    assert "Off-CPU (ms per second)" in page.get_by_test_id("chart-offcpu").inner_text()


@needs_interop
def test_an_imported_heap_profile_brings_its_memory_types_to_the_switch(ui: Session) -> None:
    """Only types with data are offered; a Go heap profile adds its four, in bytes and objects."""
    page = ui.open("/flamegraph")
    ui.frames()
    switch = page.get_by_role("group", name="Event type")
    assert switch.get_by_role("button", name="In-use bytes").count() == 0
    heap = (INTEROP / "pyroscope/pkg/pprof/testdata/heap").read_bytes()
    r = httpx.post(f"{ui.agg.http}/api/v1/ingest/pprof", content=heap, headers=ui.agg.headers(),
                   params={"service": "heapapp", "at": "now"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert {p["type"] for p in r.json()["profiles"]} == {
        "alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}  # fmt: skip
    page = ui.open("/flamegraph?label.service=heapapp")  # no CPU there: an empty state
    switch = page.get_by_role("group", name="Event type")
    for label in ("Allocated objects", "Allocated bytes", "In-use objects", "In-use bytes"):
        switch.get_by_role("button", name=label).wait_for()
    assert switch.get_by_role("button", name="Lock wait").count() == 0  # none for this service
    switch.get_by_role("button", name="In-use bytes").click()
    page.wait_for_url(re.compile(r"type=inuse_space"))
    status = page.get_by_test_id("flame-status")
    status.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=flame-status]').innerText.includes('MiB')"
    )
    total = ui.api("/api/v1/flamegraph", type="inuse_space", **{"label.service": "heapapp"})
    assert total["unit"] == "bytes" and total["total"] == 541_672_846  # the column, to the byte
    assert "516.6 MiB" in status.inner_text()
    top = page.get_by_test_id("top-table")
    top.locator("td.num").first.wait_for()
    assert top.locator("td.num").first.inner_text().endswith("MiB")  # 284.6 MiB, not 298M
    page = ui.open("/timeline?label.service=heapapp")
    chart = page.get_by_test_id("chart-inuse_space")
    chart.wait_for()
    assert "In-use bytes (bytes)" in chart.inner_text()  # a level, not a rate
    assert page.get_by_test_id("chart-lock").count() == 0
    ui.shot("heap-types")


def test_wall_clock_of_one_process_puts_cpu_and_off_cpu_time_in_one_tree(ui: Session) -> None:
    page = ui.open("/flamegraph")
    ui.frames()
    assert page.get_by_label("Wall clock").is_disabled()  # one process first
    page = ui.open("/flamegraph?pid=4242")
    ui.frames()
    page.get_by_label("Wall clock").check()
    page.wait_for_url(re.compile(r"wall=1"))
    frames = {f["name"] for f in ui.frames("flame-wall")}
    assert {"parse_json", "read_body", "[off-CPU: sleeping]", "[off-CPU: runnable]"} <= frames
    wall = ui.api("/api/v1/wallclock", pid=4242)
    status = page.get_by_test_id("wall-status").inner_text()
    assert f"{100 * wall['off_cpu_ns'] / wall['total']:.2f}%" in status
    assert "samples at 99 Hz" in status
    ui.shot("flamegraph-wall-clock")


def test_diff_shows_regression_red_and_improvement_green(ui: Session) -> None:
    page = ui.open("/diff")
    ui.frames("flame-diff")
    r, g, b = ui.pixel("parse_json", "flame-diff")
    assert r > 180 and g < 140, f"parse_json grew (10% -> 50%) but is drawn rgb{(r, g, b)}"
    r, g, b = ui.pixel("render_template", "flame-diff")
    assert g > 120 and r < 120, f"render_template shrank (50% -> 20%) but is drawn rgb{(r, g, b)}"
    r, g, b = ui.pixel("read_body", "flame-diff")
    assert abs(r - g) < 10 and abs(g - b) < 10, "read_body did not change: neutral grey"
    text = ui.hover("parse_json", "flame-diff")
    assert "10.00%" in text and "50.00%" in text and "+40.00 pp" in text
    rows = page.get_by_test_id("diff-table").locator("tbody tr")
    assert "json_tokenize" in rows.first.inner_text() and "+24.00 pp" in rows.first.inner_text()
    ui.shot("diff")

    page.get_by_role("button", name="Colour-blind safe").click()
    page.wait_for_url(re.compile(r"palette=colorblind"))
    page.wait_for_timeout(100)
    r, g, b = ui.pixel("parse_json", "flame-diff")
    assert r > 180 and b < 100, f"grew is orange in the colour-blind palette, got rgb{(r, g, b)}"
    r, g, b = ui.pixel("render_template", "flame-diff")
    assert b > r + 60, f"shrank is blue in the colour-blind palette, got rgb{(r, g, b)}"
    ui.shot("diff-colorblind")


def test_timeline_drag_sets_the_range_everywhere(ui: Session) -> None:
    page = ui.open("/timeline")
    chart = page.get_by_test_id("chart-cpu")
    chart.locator("polyline").first.wait_for(state="attached")  # a flat line has no height
    legend = page.locator(".legend-list").first.inner_text()
    assert "web-1" in legend and "web-2" in legend
    assert chart.locator("polyline").count() == 2
    ui.shot("timeline")
    box = chart.locator("svg").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
    page.mouse.up()
    page.wait_for_url(re.compile(r"from=\d{19}"))
    q = query(page)
    start, end = int(q["from"][0]), int(q["to"][0])
    assert 10 * 60e9 < end - start < 20 * 60e9  # a quarter of the hour
    # the range holds in every view
    page.get_by_role("link", name="Flamegraph").click()
    page.wait_for_url(re.compile(r"/flamegraph"))
    assert query(page)["from"] == [str(start)]
    assert ui.frames()


def test_syscalls_table(ui: Session) -> None:
    page = ui.open("/syscalls")
    table = page.get_by_test_id("syscalls-table")
    row = table.locator("tr[data-syscall=read]")
    row.wait_for()
    api = {s["name"]: s for s in ui.api("/api/v1/syscalls")["syscalls"]}
    assert row.locator("[data-col=count]").inner_text() == f"{api['read']['count']:,}"
    assert row.locator("[data-col=error_rate]").inner_text() == "1.0%"
    assert "EAGAIN" in row.inner_text()
    # sortable: by count, read is first
    table.get_by_role("columnheader", name="Count").click()
    page.wait_for_url(re.compile(r"sort=count"))
    assert table.locator("tbody tr").first.get_attribute("data-syscall") == "read"
    row.click()
    hist = page.get_by_test_id("histogram")
    hist.wait_for()
    assert "µs" in hist.inner_text()
    ui.shot("syscalls")


MUTEX, MUTEX_2, CONDVAR = "0x7f3a2c001040", "0x7f3a2c0020c0", "0x7f3a2c003080"


def names_drawn(ui: Session, testid: str) -> set[str]:
    return {f["name"] for f in ui.frames(testid)}


def test_locks_contention_class_and_the_mutex_flamegraphs(ui: Session) -> None:
    page = ui.open("/locks")
    classes = page.get_by_test_id("lock-class")
    contention = classes.get_by_role("button", name=re.compile(r"^Contention"))
    contention.wait_for()
    locks = ui.api("/api/v1/locks", limit=50)["locks"]
    contended = sum(lk["lock_class"] == "contention" for lk in locks)
    assert contention.get_attribute("aria-pressed") == "true"  # the default class
    assert contention.inner_text().endswith(str(contended))
    assert classes.get_by_role("button", name=re.compile(r"^Unclassified")).is_disabled()

    table = page.get_by_test_id("locks-table")
    row = table.locator(f"tr[data-lock='{MUTEX}']").first
    row.wait_for()
    assert "cache_get" in row.inner_text()
    assert "mutex" in row.locator("td").nth(2).inner_text()
    assert table.locator(f"tr[data-lock='{CONDVAR}']").count() == 0  # idle, not contention
    # hold p50 (holds of about 2^19 ns), p99 (the tail near 2^22 ns) and the releases
    # that woke a waiter, as the API gives them
    mutex = next(lk for lk in locks if lk["address"] == MUTEX and lk["pid"] == 4242)
    cells = table.locator(f"tr[data-lock='{MUTEX}']", has_text="(4242)").locator("td")
    assert cells.nth(8).inner_text() == f"{mutex['hold_p50_ns'] / 1e3:.0f} µs"
    assert cells.nth(9).inner_text() == f"{mutex['hold_p99_ns'] / 1e6:.1f} ms"
    assert cells.nth(10).inner_text() == f"{mutex['releases']:,}"
    # the other mutex was released to waiters but never seen acquired: no hold times
    hold_p50 = table.locator(f"tr[data-lock='{MUTEX_2}']").first.locator("td").nth(8)
    assert hold_p50.inner_text() == "–"
    assert hold_p50.get_attribute("title") == "no acquisition seen"

    row.click()
    page.wait_for_url(re.compile(r"lock=0x7f3a2c001040"))
    ui.frame("pthread_mutex_lock", "flame-lock-wait")
    text = ui.hover("cache_get", "flame-lock-wait")
    assert "100.00%" in text  # every wait on this lock comes through cache_get
    waiters = names_drawn(ui, "flame-lock-wait")
    holders = names_drawn(ui, "flame-lock-hold")
    wakers = names_drawn(ui, "flame-lock-wake")
    assert "[contention: mutex]" in waiters and "flush_cache" not in waiters
    assert "flush_cache" in holders and "cache_get" not in holders
    assert "__lll_unlock_wake" in wakers and "__lll_unlock_wake" not in holders
    assert "100.00%" in ui.hover("flush_cache", "flame-lock-hold")
    ui.shot("locks")

    # no timed hold and no waker seen: one sentence each instead of an empty graph
    page.get_by_test_id("locks-table").locator(f"tr[data-lock='{MUTEX_2}']").first.click()
    page.wait_for_url(re.compile(r"lock=0x7f3a2c0020c0"))
    ui.frame("gc_collect", "flame-lock-wait")
    hold = page.get_by_test_id("lock-flame-hold").get_by_test_id("empty")
    hold.get_by_text("No hold was timed").wait_for()
    wake = page.get_by_test_id("lock-flame-wake").get_by_test_id("empty")
    wake.get_by_text("No wake that ended a wait").wait_for()


def test_locks_idle_class_lists_the_condvar_without_a_holder(ui: Session) -> None:
    page = ui.open("/locks")
    page.get_by_test_id("lock-class").get_by_role("button", name=re.compile(r"^Idle waits")).click()
    page.wait_for_url(re.compile(r"lock_class=idle"))
    table = page.get_by_test_id("locks-table")
    row = table.locator(f"tr[data-lock='{CONDVAR}']").first
    row.wait_for()
    assert "condition variable" in row.inner_text() and "worker_loop" in row.inner_text()
    assert table.locator(f"tr[data-lock='{MUTEX}']").count() == 0
    assert "Hold p50" not in table.locator("thead").inner_text()  # idle waits have no holder

    row.click()
    page.wait_for_url(re.compile(r"lock=0x7f3a2c003080"))
    assert "[idle: condition variable]" in names_drawn(ui, "flame-lock-wait")
    assert "worker_loop" in names_drawn(ui, "flame-lock-wait")
    assert "enqueue_job" in names_drawn(ui, "flame-lock-wake")
    note = page.get_by_test_id("no-holder")
    assert note.inner_text().startswith("A condition variable has no holder")
    assert page.get_by_test_id("flame-lock-hold").count() == 0
    # the class is in the URL: a reload shows the same
    page.reload()
    idle = page.get_by_test_id("lock-class").get_by_role("button", name=re.compile(r"^Idle waits"))
    idle.wait_for()
    assert idle.get_attribute("aria-pressed") == "true"
    ui.shot("locks-idle")


def test_overview_lists_contended_locks_and_links_the_idle_waits(ui: Session) -> None:
    page = ui.open("/")
    card = page.get_by_test_id("card-locks")
    card.get_by_text(MUTEX).first.wait_for()
    assert CONDVAR not in card.inner_text()  # the most wait time, but idle
    idle = [lk for lk in ui.api("/api/v1/locks", limit=50)["locks"] if lk["lock_class"] == "idle"]
    note = card.get_by_test_id("idle-waits")
    waits = sum(lk["contentions"] for lk in idle)
    assert f"{waits:,} idle waits on {len(idle)} lock" in note.inner_text()
    note.get_by_role("link", name="Idle waits →").click()
    page.wait_for_url(re.compile(r"/locks\?.*lock_class=idle"))
    page.get_by_test_id("locks-table").locator(f"tr[data-lock='{CONDVAR}']").first.wait_for()


def test_export_downloads_the_range(ui: Session) -> None:
    page = ui.open("/flamegraph")
    ui.frames()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Folded").click()
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename == "aperture-cpu.folded"
    assert "parse_json;json_tokenize" in text
    with page.expect_download() as dl:
        page.get_by_role("button", name="pprof").click()
    assert dl.value.suggested_filename.endswith(".pb.gz")


def test_empty_state_says_what_to_do(ui: Session) -> None:
    page = ui.open("/flamegraph?host=no-such-host")
    empty = page.get_by_test_id("empty")
    empty.wait_for()
    assert "No samples in this range — widen it or check the agent." in empty.inner_text()
    ui.shot("empty")
    empty.get_by_role("button", name="Clear the filters").click()
    ui.frames()


def test_error_state_says_what_to_do(ui: Session) -> None:
    page = ui.open("/flamegraph?from=-5m&to=-10m")
    err = page.get_by_test_id("error").first
    err.wait_for()
    assert "must be later" in err.inner_text() and "Fix the filters" in err.inner_text()


def test_login_prompt_on_bad_token(browser: Any, agg: Any, artifacts: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script("sessionStorage.setItem('aperture.token', 'wrong-token')")
    page = context.new_page()
    try:
        page.goto(agg.http + "/")
        dialog = page.get_by_test_id("login")
        dialog.wait_for()
        assert page.locator("[data-testid=login]").count() == 1  # asked once
        assert "rejected" in dialog.inner_text()
        page.screenshot(path=str(artifacts / "login.png"))
        dialog.get_by_label("Token").fill("still-wrong")
        dialog.get_by_role("button", name="Sign in").click()
        dialog.get_by_text("rejected").wait_for()
        dialog.get_by_label("Token").fill(agg.token)
        dialog.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("agents-table").get_by_text("agent-web-1").wait_for()
        page.get_by_test_id("login").wait_for(state="detached")  # closes after the data
        assert page.evaluate("sessionStorage.getItem('aperture.token')") == agg.token
    finally:
        context.close()


def test_wide_screen_uses_the_width(browser: Any, agg: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(f"sessionStorage.setItem('aperture.token', {agg.token!r})")
    ui = Session(context.new_page(), agg, artifacts)
    try:
        page = ui.open("/flamegraph")
        canvas = page.locator("[data-testid=flame-main] canvas.flame-canvas")
        ui.frames()
        assert canvas.bounding_box()["width"] > 1300
        ui.shot("flamegraph-wide")
        ui.open("/")
        page.get_by_test_id("agents-table").get_by_text("agent-web-1").wait_for()
        ui.shot("overview-wide")
    finally:
        context.close()
    assert not ui.errors, ui.errors


UNWIND_LINE = (
    "User stacks: 97.1% complete to their entry point · 2.4% stopped early · "
    "0.5% frame pointers only"
)


def test_flamegraph_says_how_user_stacks_were_unwound(ui: Session) -> None:
    page = ui.open("/flamegraph")
    line = page.get_by_test_id("unwind-line")
    line.wait_for()
    assert line.inner_text() == UNWIND_LINE
    title = line.get_attribute("title")
    # 1000 stacks and 20 + 4 early ends in each window the range holds (ui_seed.UNWIND)
    pattern = r"([\d,]+) user stacks in (\d+) windows \(--unwind auto\): ([\d,]+) complete"
    m = re.match(pattern, title)
    assert m, title
    windows = int(m[2])
    assert windows > 0 and int(m[1].replace(",", "")) == 1000 * windows
    assert int(m[3].replace(",", "")) == 971 * windows
    assert f"128 frames reached {20 * windows:,}, code without a table {4 * windows:,}" in title
    assert "Unwind tables: 12 binaries, 3.0 MiB of kernel memory" in title
    ui.shot("flamegraph-unwind")
    # one host: web-2's tables are the smaller; the shares are the same
    page = ui.open("/flamegraph?host=web-2")
    page.get_by_test_id("unwind-line").get_by_text(UNWIND_LINE).wait_for()
    assert "1.5 MiB" in page.get_by_test_id("unwind-line").get_attribute("title")
    # a process filter cannot narrow per-window counts, and the line says so
    page = ui.open("/flamegraph?pid=4242")
    page.get_by_test_id("unwind-line").get_by_text("(all processes of these agents").wait_for()
    # the lock view has no user-stack unwinding line
    page = ui.open("/flamegraph?type=lock")
    page.get_by_test_id("flame-main").wait_for()
    assert page.get_by_test_id("unwind-line").count() == 0


def test_unwinding_not_reported_by_an_old_agent(ui: Session) -> None:
    from ui_seed import Host, Pusher

    from aperture.model import EventType, Profile

    now = time.time_ns()
    old = Host("agent-old", "old-1", 999, {"service": "batch"})
    empty = Profile(EventType.CPU, "samples", start_ns=now - 10**10, end_ns=now, frequency_hz=99)
    pusher = Pusher(ui.agg.grpc_target, ui.agg.token)
    try:
        pusher.push(old, 1, [empty])  # no samples: the other views' numbers stay as they are
    finally:
        pusher.close()
    page = ui.open("/flamegraph?host=old-1")
    line = page.get_by_test_id("unwind-line")
    line.get_by_text("User stacks: unwinding not reported by these agents").wait_for()
    assert "%" not in line.inner_text()
