//! The `ReportIngest` gRPC service as served, with a codec whose buffers fit thousands of
//! idle streams.
//!
//! The generated `ReportIngestServer` uses tonic's default codec buffers: an 8 KiB
//! decode buffer and an 8 KiB encode buffer per stream, allocated when the stream opens
//! and kept (the decode buffer at its largest size) for the stream's life. An agent
//! holds its stream open for days and sends a report of ~1.1 KiB every 10 s, and its
//! acks are a few dozen bytes, so at 5,000 agents those buffers alone were ~80 MiB of the
//! aggregator's memory (issue 14). [`IngestServer`] is the same service (same path, same
//! [`IngestService`] behind it) with [`LeanCodec`]: buffers that start at
//! [`DECODE_BUFFER_BYTES`] and [`ENCODE_BUFFER_BYTES`] and grow only as a message needs.

use std::sync::Arc;
use std::task::{Context, Poll};

use caretaker_proto::pb::{self, report_ingest_server::ReportIngest};
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::api::ingest::IngestService;

/// First size of a stream's decode buffer: one report of a small node. A larger message
/// grows it (to its size and what HTTP/2 delivered with it, bounded by the stream's
/// receive window).
pub(crate) const DECODE_BUFFER_BYTES: usize = 1 << 10;

/// First size of a stream's encode buffer: a few acks.
pub(crate) const ENCODE_BUFFER_BYTES: usize = 256;

/// Acks collected in one encode buffer before it is handed to HTTP/2.
const ENCODE_YIELD_BYTES: usize = 4 << 10;

/// Largest piece of request body handed to the decoder at once. tonic's decode buffer
/// keeps the largest size it ever reached for the stream's life, and it reaches about
/// twice what it was handed at once beyond a partial message: with whole HTTP/2 DATA
/// frames (up to the stream window) that was ~30 KiB per stream (heaptrack, bench-ingest
/// at 2,000 agents: 60 MiB of a 217 MiB heap); with 1 KiB pieces a few KiB.
pub(crate) const DECODE_PIECE_BYTES: usize = 1 << 10;

/// Prost encoding with small buffers (see the module docs).
#[derive(Debug)]
pub(crate) struct LeanCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(ENCODE_BUFFER_BYTES, ENCODE_YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        // The yield threshold only matters for encoding.
        ProstDecoder::new(BufferSettings::new(DECODE_BUFFER_BYTES, ENCODE_YIELD_BYTES))
    }
}

/// `caretaker.v1.ReportIngest` served with [`LeanCodec`]; otherwise what the generated
/// `ReportIngestServer` does (unknown methods answer `UNIMPLEMENTED`).
#[derive(Debug, Clone)]
pub(crate) struct IngestServer {
    inner: Arc<IngestService>,
    max_decoding_message_size: usize,
}

impl IngestServer {
    /// Serves `service`, refusing messages over `max_decoding_message_size` bytes with
    /// `OUT_OF_RANGE`.
    pub(crate) fn new(service: IngestService, max_decoding_message_size: usize) -> Self {
        Self {
            inner: Arc::new(service),
            max_decoding_message_size,
        }
    }
}

impl tonic::server::NamedService for IngestServer {
    const NAME: &'static str = pb::report_ingest_server::SERVICE_NAME;
}

/// The one method, `Stream`.
struct StreamMethod(Arc<IngestService>);

impl tonic::server::StreamingService<pb::AgentMessage> for StreamMethod {
    type Response = pb::AggregatorMessage;
    type ResponseStream = <IngestService as ReportIngest>::StreamStream;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, tonic::Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
    ) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.stream(request).await })
    }
}

/// The path of `ReportIngest.Stream`.
pub(crate) const STREAM_PATH: &str = "/caretaker.v1.ReportIngest/Stream";

impl<B> tower::Service<http::Request<B>> for IngestServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == STREAM_PATH {
            let method = StreamMethod(Arc::clone(&self.inner));
            let max = self.max_decoding_message_size;
            let req = req.map(Pieces::new);
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(LeanCodec::<
                    pb::AggregatorMessage,
                    pb::AgentMessage,
                >::default())
                .apply_max_message_size_config(Some(max), None);
                Ok(grpc.streaming(method, req).await)
            })
        } else {
            Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            })
        }
    }
}

/// A request body whose data comes in pieces of at most [`DECODE_PIECE_BYTES`] (see
/// there). The pieces are slices of what HTTP/2 delivered, not copies; HTTP/2 flow
/// control is released as before, when a frame is taken from the connection.
struct Pieces<B> {
    inner: std::pin::Pin<Box<B>>,
    rest: bytes::Bytes,
}

impl<B> Pieces<B> {
    fn new(inner: B) -> Self {
        Self {
            inner: Box::pin(inner),
            rest: bytes::Bytes::new(),
        }
    }

    fn piece(&mut self) -> bytes::Bytes {
        let n = self.rest.len().min(DECODE_PIECE_BYTES);
        self.rest.split_to(n)
    }
}

impl<B> Body for Pieces<B>
where
    B: Body,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use bytes::Buf;
        let this = self.get_mut();
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(this.piece()))));
        }
        match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    this.rest = data.copy_to_bytes(data.remaining());
                    Poll::Ready(Some(Ok(http_body::Frame::data(this.piece()))))
                }
                Err(frame) => Poll::Ready(Some(Ok(
                    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                ))),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_is_handed_on_in_pieces_of_at_most_the_piece_size_unchanged() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let frames = vec![
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(
                data[..2100].to_vec(),
            ))),
            Ok(http_body::Frame::data(bytes::Bytes::from(
                data[2100..].to_vec(),
            ))),
        ];
        let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        let mut pieces = Pieces::new(body);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = pieces.frame().await {
            let d = frame.unwrap().into_data().unwrap();
            sizes.push(d.len());
            got.extend_from_slice(&d);
        }
        assert_eq!(sizes, vec![1024, 1024, 52, 400]);
        assert_eq!(got, data);
        assert!(pieces.rest.is_empty(), "nothing held back");
    }
}
