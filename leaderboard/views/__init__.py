"""The blueprints: public board, sign-in, student pages, staff pages, JSON API."""
