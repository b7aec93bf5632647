"""A simulated Satellite: the Foreman API v2 subset `instanceapi reap` uses, over real HTTP.

Served on 127.0.0.1 by a threaded stdlib WSGI server; built from the shared facts
("Foreman / Katello API"), see `paging` for the details of each point:

- `GET /api/v2/hosts`: Foreman's envelope (`total, subtotal, page, per_page, search,
  sort, results`), ordered by name unless `order=id asc`, `thin=true`, the index
  fields (organization, location, host group, compute resource, Katello's
  `subscription_facet_attributes`);
- `GET /api/v2/fact_values`: rows paged, results keyed by host name, `subtotal` the
  hosts in the page, ordered by value unless `order=host_id asc`, `per_page=all`
  an empty page, `per_page` uncapped, `host = <id>` a host id;
- `GET /api/v2/hosts/:id` with parameters filtered by `view_params` and hidden
  values shown as `*****`; `GET /api/v2/hosts/:id/parameters` (`view_params`);
- `DELETE /api/v2/hosts/:id` the Katello way: 200 even when the record survived;
- re-registration taking over a host's id and name (`reregister`);
- basic auth with a password or a personal access token (no Bearer), users with
  Foreman permissions (`auth`), request counters, injected failures and races.

Search subset: clauses joined by `and`, each `field op value` with op `=`, `!=`,
`~` or `!~` (or `null? field`) and the value bare or double-quoted; parentheses
are ignored. Host fields: id, name, organization(_id), location(_id), hostgroup,
hostgroup_title, compute_resource, params.<name>, facts.<name>. Fact-value fields:
fact, name, value, host, organization_id, location_id. Anything else answers 400.

Start one for the demo cloud (prints one JSON line with its URL and credentials):

    python -m instanceapi.testing.satellite --hosts-from-json cloud.json
"""

from instanceapi.testing.satellite.model import SearchError, SimHost, matches, parse_search
from instanceapi.testing.satellite.server import SimulatedSatellite

__all__ = ["SearchError", "SimHost", "SimulatedSatellite", "matches", "parse_search"]
