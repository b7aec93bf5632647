"""A simulated Satellite: the Foreman API v2 subset `instanceapi reap` uses, over real HTTP.

Served on 127.0.0.1 by a threaded stdlib WSGI server:

- `GET /api/v2/hosts` and `GET /api/v2/fact_values`, paged like Foreman
  (`page`, `per_page`, `total`, `subtotal`, `results`; fact values keyed by host name);
- `GET /api/v2/hosts/:id` with `compute_resource_id`, `parameters`, `all_parameters`
  and Katello's `subscription_facet_attributes.last_checkin`;
- `DELETE /api/v2/hosts/:id` (an id or a name, as Foreman accepts both);
- basic auth, request counters, and injected failures (a page, a DELETE).

Search subset: clauses joined by `and`, each `field op value` with op `=`, `!=`,
`~` or `!~` and the value bare or double-quoted; parentheses are ignored. Host
fields: name, organization, location, hostgroup, hostgroup_title, params.<name>,
facts.<name>. Fact-value fields: fact, name, host. Anything else answers 400.

Start one for the demo cloud (prints one JSON line with its URL and credentials):

    python -m instanceapi.testing.satellite --hosts-from-json cloud.json
"""

from instanceapi.testing.satellite.model import SearchError, SimHost, matches, parse_search
from instanceapi.testing.satellite.server import SimulatedSatellite

__all__ = ["SearchError", "SimHost", "SimulatedSatellite", "matches", "parse_search"]
