"""`pipectl assets`: each asset's producers, consumers and last update per ds."""
from __future__ import annotations

import os

import typer

from pipectl.cli.app import app, get_ctx
@app.command()
def assets(ctx: typer.Context) -> None:
    """List assets: producers, consumers, last update per ds, late ones flagged."""
    from pipectl.engine import assets as assets_mod
    from pipectl.state.store import open_store
    c = get_ctx(ctx)
    config = c.config()
    res = c.load()
    pipelines = res.pipelines
    if os.path.exists(config.state_db):
        store = open_store(config)
    else:
        # a reading command never creates the state file: nothing has happened yet
        from pipectl.state.store import Store
        store = Store(":memory:")
    try:
        rows = assets_mod.report(store, pipelines, c.now())
    finally:
        store.close()
    if c.json:
        from pipectl.cli.render import print_json
        print_json(rows)
        return
    if not rows:
        print("no assets: no task lists `produces` and no pipeline is scheduled on assets")
        return
    for a in rows:
        late = a["late"]
        flag = f"  LATE: ds {late['ds']} due {late['due']}" if late else ""
        print(f"{a['asset']}{flag}")
        print(f"  producers: {', '.join(a['producers']) or '-'}")
        print(f"  consumers: {', '.join(a['consumers']) or '-'}")
        if not a["updates"]:
            print("  updates:   none yet")
        for u in a["updates"]:
            part = "" if u["complete"] else "  (partial day)"
            print(f"  {u['ds']}  last update {u['last_update']}  {u['events']} event{'s' if u['events'] != 1 else ''}{part}")
