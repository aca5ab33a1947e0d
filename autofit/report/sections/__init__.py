"""sections of the report; see autofit/report/__init__.py."""
