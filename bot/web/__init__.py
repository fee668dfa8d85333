"""HTTP mode's web server: routes.py sends each request to its handler, one module each."""
