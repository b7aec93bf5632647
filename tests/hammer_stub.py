"""A stand-in for `hammer` that talks to the simulated Satellite over HTTP, as hammer does.

Installed as `hammer` on PATH by the script's tests. What it copies from hammer-cli
(the shared facts, "Foreman / Katello API"):
- `--per-page all` is sent as per_page=0, so nothing is listed;
- without `--per-page`, CSV output reads every page, 1,000 rows each, until a short
  page (fact list counts (host, fact, value) rows);
- `fact list` sends no order unless given `--order "host_id ASC"`, so Satellite
  orders by value;
- `host info --fields` takes hammer-cli-katello's labels ("Subscription
  Information/Uuid", "Subscription Information/Registered At").
Environment: HAMMER_URL, HAMMER_USER, HAMMER_PASSWORD, HAMMER_LOG (one JSON line per
call). Exit 70 on an HTTP error, like hammer's EX_SOFTWARE.
"""

import base64
import csv
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

PAGE = 1000


def call(method, path, params=None):
    query = "?" + urllib.parse.urlencode(params) if params else ""
    url = os.environ["HAMMER_URL"] + path + query
    req = urllib.request.Request(url, method=method)  # noqa: S310 - loopback http only
    secret = f"{os.environ['HAMMER_USER']}:{os.environ['HAMMER_PASSWORD']}"
    req.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return json.load(resp)
    except urllib.error.HTTPError as ex:
        print(f"Error: {ex.code} {ex.reason}", file=sys.stderr)
        sys.exit(70)
    except (urllib.error.URLError, OSError) as ex:
        sys.exit(f"Error: {ex}")


def listing(path, params, per_page, flatten):
    """Yield rows: one page when --per-page is given, else every page until a short one."""
    if per_page is not None:
        size = 0 if per_page == "all" else int(per_page)
        yield from flatten(call("GET", path, {**params, "page": 1, "per_page": size}))
        return
    page = 1
    while True:
        rows = list(flatten(call("GET", path, {**params, "page": page, "per_page": PAGE})))
        yield from rows
        if len(rows) < PAGE:
            return
        page += 1


def split_global(args):
    """Return (headers?, command, rest) from hammer's argv."""
    headers, i = True, 0
    while args[i].startswith("--"):
        if args[i] == "--no-headers":
            headers = False
        i += 2 if args[i] == "--output" else 1
    return headers, args[i : i + 2], args[i + 2 :]


def fact_rows(body):
    for host, facts in body["results"].items():
        for fact, value in facts.items():
            yield [host, fact, value]


def main(args):
    with open(os.environ["HAMMER_LOG"], "a") as log:
        log.write(json.dumps(args) + "\n")
    headers, command, rest = split_global(args)

    def option(name, default=None):
        return rest[rest.index(name) + 1] if name in rest else default

    out = csv.writer(sys.stdout, lineterminator="\n")
    params = {"search": option("--search", "")}
    per_page = option("--per-page")
    if command == ["host", "list"]:
        fields = option("--fields", "Id,Name").split(",")
        rows = listing("/api/v2/hosts", params, per_page, lambda b: b["results"])
        out.writerows([fields] if headers else [])
        out.writerows([host[f.strip().lower()] for f in fields] for host in rows)
    elif command == ["fact", "list"]:
        params.update({"order": option("--order")} if option("--order") else {})
        out.writerows([["Host", "Fact", "Value"]] if headers else [])
        out.writerows(listing("/api/v2/fact_values", params, per_page, fact_rows))
    elif command == ["host", "info"]:  # only the fields the script asks for
        host = call("GET", f"/api/v2/hosts/{option('--id')}")
        facet = host.get("subscription_facet_attributes") or {}
        labels = {"Subscription Information/Uuid": "uuid",
                  "Subscription Information/Registered At": "registered_at"}  # fmt: skip
        fields = option("--fields").split(",")
        out.writerows([fields] if headers else [])
        out.writerow([facet.get(labels[f]) or "" for f in fields])
    elif command == ["host", "delete"]:
        call("DELETE", f"/api/v2/hosts/{option('--id')}")
        print("Host deleted.")
    else:
        sys.exit(f"stub hammer: unsupported {args}")


if __name__ == "__main__":
    main(sys.argv[1:])
