//! API errors (status, machine id, message) and the JSON body extractor that reports malformed bodies as one.

#[allow(unused_imports)]
use super::*;

/// An API error: status, machine id and message.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) id: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        id: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn body(&self) -> ErrorBody {
        ErrorBody {
            id: self.id.into(),
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let (status, id) = match &err {
            StoreError::ConfigTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            _ => match err.kind() {
                ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
                ErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
                ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("store: {err}");
        }
        ApiError::new(status, id, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// `Json` whose rejections are API errors (400 for malformed JSON, 413 past the body limit).
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request body is too large",
                ))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "malformed request body: {}",
                e.body_text()
            ))),
        }
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        e.to_string(),
    )
}
