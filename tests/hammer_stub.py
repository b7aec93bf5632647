"""A stand-in for `hammer` that talks to the simulated Satellite over HTTP, as hammer does.

Installed as `hammer` on PATH by the script's tests. What it copies from hammer-cli
(the shared facts, "Foreman / Katello API"):
- `--per-page all` is sent as per_page=0, so nothing is listed;
- without `--per-page`, CSV output reads every page, 1,000 rows each, until a short
  page (fact list counts (host, fact, value) rows);
- `fact list` sends no order unless given `--order "host_id ASC"`, so Satellite
  orders by value.
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
    req = urllib.request.Request(os.environ["HAMMER_URL"] + path + query, method=method)
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


def main(args):
    with open(os.environ["HAMMER_LOG"], "a") as log:
        log.write(json.dumps(args) + "\n")
    headers, i = True, 0
    while args[i].startswith("--"):
        if args[i] == "--output":
            i += 2
        else:
            headers = not args[i] == "--no-headers"
            i += 1
    command, rest = args[i : i + 2], args[i + 2 :]

    def option(name, default=None):
        return rest[rest.index(name) + 1] if name in rest else default

    out = csv.writer(sys.stdout, lineterminator="\n")
    params = {"search": option("--search", "")}
    if command == ["host", "list"]:
        fields = option("--fields", "Id,Name").split(",")
        keys = [f.strip().lower() for f in fields]
        rows = listing("/api/v2/hosts", params, option("--per-page"), lambda b: b["results"])
        if headers:
            out.writerow(fields)
        for host in rows:
            out.writerow([host[k] for k in keys])
    elif command == ["fact", "list"]:
        if option("--order"):
            params["order"] = option("--order")

        def flatten(body):
            for host, facts in body["results"].items():
                for fact, value in facts.items():
                    yield [host, fact, value]

        if headers:
            out.writerow(["Host", "Fact", "Value"])
        out.writerows(listing("/api/v2/fact_values", params, option("--per-page"), flatten))
    elif command == ["host", "delete"]:
        call("DELETE", f"/api/v2/hosts/{option('--id')}")
        print("Host deleted.")
    else:
        sys.exit(f"stub hammer: unsupported {args}")


if __name__ == "__main__":
    main(sys.argv[1:])
