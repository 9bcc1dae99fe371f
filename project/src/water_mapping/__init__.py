"""Water mapping: the H2Ops example project."""
