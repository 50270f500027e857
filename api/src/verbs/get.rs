//! `get`: one object.

use axum::http::StatusCode;
use axum::response::Response;

use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::resource::load;
use crate::respond::respond_object;
use crate::state::AppState;

pub(crate) async fn get(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (obj, _) = load(state, req).await?;
    Ok(respond_object(req, StatusCode::OK, &obj))
}
