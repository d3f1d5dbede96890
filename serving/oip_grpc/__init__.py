"""KServe's Open Inference Protocol v2 over gRPC (service ``inference.GRPCInferenceService``).

grpc_predict_v2.proto is KServe's, unchanged; the *_pb2 modules are generated from it
(``make proto``) and committed, so grpcio-tools is only a development tool. servicer.py answers
the RPCs with the pipeline; Ray Serve's gRPC proxy serves it in the Ray app (runner.py), a grpc.aio
server in the in-process stack (server.py).
"""

# What Ray Serve's gRPCOptions.grpc_servicer_functions (and KubeRay's serveConfigV2) name.
ADD_SERVICER = "finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
