"""The ModelRollout operator: a pure rollout core, narrow adapters (Kubernetes, Prometheus) and kopf handlers.

Importing this package is cheap: kopf and the Kubernetes client load only with
:mod:`finserve.operator.handlers` and the adapters. The public surface:

- :func:`finserve.operator.core.decide.decide` and :func:`finserve.operator.core.autoscale.decide_scaling`
- :data:`finserve.operator.api.CRD_PATH`, :data:`finserve.operator.rbac.REQUIRED_RULES`
- ``finserve operator run`` and ``finserve rollout ...`` (finserve/commands/)
"""
