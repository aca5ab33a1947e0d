"""Search spaces shipped with autofit (installed as the package data `autofit.search_spaces`)."""
