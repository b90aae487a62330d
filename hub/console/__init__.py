"""The console: a static page (index.html), its script (console.js) and its style (console.css), served by the
admin endpoint at `/` (hub/failures_api.py). Plain HTML, JavaScript and CSS with no build step; the page reads
the admin API of the hub that serves it and nothing else."""
