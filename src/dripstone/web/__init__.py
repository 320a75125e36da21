"""The dashboard: server-rendered pages and forms for the people of an account, signed in
with a session cookie, each page calling the same services as the API.

`app.py` mounts it; `auth.py` holds sign-in sessions, CSRF and roles; `templating.py` the page
renderer; one module per area (overview, subscribers, imports, lists, mailings, sends, drips,
settings) holds its routes, each with its templates under `templates/AREA/`."""
