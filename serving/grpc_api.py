"""TF Serving's gRPC API on grpcio's asyncio server: PredictionService/Predict and
GetModelMetadata, ModelService/GetModelStatus (model_servers/prediction_service_impl.cc,
servables/tensorflow/predict_util.cc, get_model_status_impl.cc).

The same servables, batching queues and metrics as the REST handler (``Inference``), so a
full queue answers UNAVAILABLE with TF Serving's message by either protocol. Errors are
TF statuses passed through as gRPC codes with TF Serving's messages (cut at 1,024
characters). ``--grpc_max_threads`` bounds the RPCs served at once; past it a call gets
RESOURCE_EXHAUSTED, as the synchronous server's thread quota gives. A request that does
not parse gets INVALID_ARGUMENT "Failed to parse <Message>" (our wording).
"""

from __future__ import annotations

import time

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from serving import tensor_proto
from serving import tfs_grpc as api
from serving import tfs_messages_pb2 as pb
from serving.errors import ApiError, invalid
from serving.inference import Inference
from serving.servable import Servable, Signature

DEFAULT_SIGNATURE = "serving_default"
_STATE_AVAILABLE = pb.ModelVersionStatus.State.Value("AVAILABLE")


def _spec_version(spec: pb.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _dtype_name(name: str) -> str:
    """TF's DataTypeString: DT_FLOAT -> 'float'."""
    return name[3:].lower()


class GrpcApi:
    """The gRPC handlers for the local server's one model."""

    def __init__(self, inference: Inference) -> None:
        self.inference = inference
        self.metrics = inference.metrics

    # --- service wiring ---------------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(fn, request, response):
            async def handler(data: bytes, context: grpc.aio.ServicerContext):
                try:
                    message = request.FromString(data)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Failed to parse {request.__name__}")
                return await fn(message, context)

            return grpc.unary_unary_rpc_method_handler(handler, response_serializer=response.SerializeToString)

        return [
            grpc.method_handlers_generic_handler(api.PREDICTION_SERVICE, {
                api.PREDICT_METHOD: unary(self.predict, pb.PredictRequest, pb.PredictResponse),
                "GetModelMetadata": unary(self.get_model_metadata, pb.GetModelMetadataRequest,
                                          pb.GetModelMetadataResponse),
            }),
            grpc.method_handlers_generic_handler(api.MODEL_SERVICE, {
                "GetModelStatus": unary(self.get_model_status, pb.GetModelStatusRequest, pb.GetModelStatusResponse),
            }),
        ]

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, err: ApiError) -> None:
        code = getattr(grpc.StatusCode, err.code, grpc.StatusCode.INTERNAL)
        message = err.message
        if len(message) > api.MAX_ERROR_MESSAGE_CHARS:  # grpc_status_util.cc's ToGRPCStatus
            message = message[: api.MAX_ERROR_MESSAGE_CHARS] + "...TRUNCATED"
        await context.abort(code, message)

    # --- Predict ----------------------------------------------------------------------------

    async def predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        started = time.perf_counter()
        name = request.model_spec.name
        self.inference.in_flight += 1
        try:
            response = await self._predict(request)
        except ApiError as err:
            self.metrics.request_count.inc(name, err.code)
            await self._abort(context, err)
        except Exception as err:  # a bug, not the client's fault: INTERNAL, and the server lives on
            self.metrics.request_count.inc(name, "INTERNAL")
            await self._abort(context, ApiError("INTERNAL", f"{type(err).__name__}: {err}"))
        finally:
            self.inference.in_flight -= 1
        self.metrics.request_count.inc(name, "OK")
        self.metrics.request_latency.observe((time.perf_counter() - started) * 1e6, name, "Predict", "GRPC")
        return response

    def _servable(self, request) -> Servable:
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        spec = request.model_spec
        if not spec.name:
            raise invalid("ModelSpec has no name specified.")
        version, label = _spec_version(spec)
        return self.inference.resolve(spec.name, version, label)

    async def _predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        servable = self._servable(request)
        signature = self._signature(servable, request.model_spec.signature_name)
        tensors = self._inputs(request, signature)
        outputs = self._output_filter(request, signature)
        run_started = time.perf_counter()
        result = await self.inference.run(servable, signature.name, tensors)
        self.metrics.runtime_latency.observe((time.perf_counter() - run_started) * 1e6, servable.name,
                                             "Predict", "TF1")
        response = pb.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for alias in outputs:
            # TF Serving's default (kAsProtoField): the typed *_val fields, not tensor_content
            response.outputs[alias].CopyFrom(tensor_proto.from_numpy(np.asarray(result[alias]), content=False))
        return response

    @staticmethod
    def _signature(servable: Servable, name: str) -> Signature:
        key = name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise ApiError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return servable.signature(key)

    @staticmethod
    def _inputs(request: pb.PredictRequest, signature: Signature) -> dict[str, np.ndarray]:
        sent, wanted = set(request.inputs), set(signature.inputs)
        if sent != wanted:
            def names(s):
                return "{" + ",".join(sorted(s)) + "}"
            raise invalid(f"input size does not match signature: {len(sent)}!={len(wanted)} len({names(sent)}) != "
                          f"len({names(wanted)}). Sent extra: {names(sent - wanted)}. "
                          f"Missing but required: {names(wanted - sent)}.")
        tensors = {}
        for index, alias in enumerate(sorted(signature.inputs)):
            proto = request.inputs[alias]
            want = signature.inputs[alias].dtype
            got = tensor_proto.BY_NUMBER.get(proto.dtype)
            if got is None or got.name != want:
                got_name = got.name if got else f"DT_TYPE{proto.dtype}"
                raise invalid(f"Expects arg[{index}] to be {_dtype_name(want)} but {_dtype_name(got_name)} "
                              "is provided")
            try:
                tensors[alias] = tensor_proto.to_numpy(proto)
            except ApiError:
                raise invalid(f"tensor parsing error: {alias}") from None
        signature.check_shapes(tensors)
        return tensors

    @staticmethod
    def _output_filter(request: pb.PredictRequest, signature: Signature) -> list[str]:
        if not request.output_filter:
            return sorted(signature.outputs)
        seen: set[str] = set()
        for alias in request.output_filter:
            if alias not in signature.outputs:
                known = "{" + ",".join(sorted(signature.outputs)) + "}"
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
                              f"set {known}.")
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return list(request.output_filter)

    # --- metadata and status ----------------------------------------------------------------

    async def get_model_metadata(self, request: pb.GetModelMetadataRequest,
                                 context: grpc.aio.ServicerContext) -> pb.GetModelMetadataResponse:
        try:
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != api.SIGNATURE_DEF_FIELD:
                    raise invalid(f"Metadata field {field} is not supported")
            servable = self._servable(request)
        except ApiError as err:
            await self._abort(context, err)
        defs = pb.SignatureDefMap()
        for key, raw in servable.signature_def_bytes.items():
            defs.signature_def[key].ParseFromString(raw)
        response = pb.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        entry = response.metadata[api.SIGNATURE_DEF_FIELD]
        entry.type_url = api.SIGNATURE_DEF_MAP_TYPE_URL
        entry.value = defs.SerializeToString()
        return response

    async def get_model_status(self, request: pb.GetModelStatusRequest,
                               context: grpc.aio.ServicerContext) -> pb.GetModelStatusResponse:
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            versions = self.inference.status_versions(request.model_spec.name, *_spec_version(request.model_spec))
        except ApiError as err:
            await self._abort(context, err)
        response = pb.GetModelStatusResponse()
        for v in versions:
            response.model_version_status.add(version=v, state=_STATE_AVAILABLE)  # status: OK (the default)
        return response


async def start(api_: GrpcApi, host: str, port: int, *, max_threads: int | None = None,
                max_message_bytes: int = api.INT32_MAX) -> tuple[grpc.aio.Server, int]:
    """Starts the gRPC server on host:port (0: any free port); returns it and the bound port.
    A request over ``max_message_bytes`` (TF Serving's: INT32_MAX) is refused by gRPC itself:
    RESOURCE_EXHAUSTED "Received message larger than max (N vs. M)"."""
    options = [(api.MAX_RECEIVE, min(max_message_bytes, api.INT32_MAX))]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_threads)
    server.add_generic_rpc_handlers(api_.handlers())
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server, bound
