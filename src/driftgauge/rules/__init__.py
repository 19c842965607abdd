"""What `driftgauge rules` writes for one config: Prometheus rules, a PrometheusRule, dashboards."""
