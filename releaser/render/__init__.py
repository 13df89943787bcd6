"""Renderers: Plan -> files in memory (compose/<name>/ and charts/<name>/). They translate the plan's
decisions and decide nothing; the Helm templates are static files in helm_chart/."""
