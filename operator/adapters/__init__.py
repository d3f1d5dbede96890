"""Adapters behind the ports: Prometheus, Kubernetes (routing ConfigMap, workloads), in-memory."""
