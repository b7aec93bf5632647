"""How the service runs: Gunicorn plus one supervised refresher process per host."""
