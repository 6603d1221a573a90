"""The JSON API: /api/v1 (v1.py), the HTTTN adapter (httttn.py) and what they share
(common.py). It uses the web's context, never its pages."""
