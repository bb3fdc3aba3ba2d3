//! The classification every library error maps to; the hub turns it into an HTTP status in one
//! place.

/// What kind of failure an error is, independent of where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidArgument,
    /// The request conflicts with the current state (e.g. an id that already exists).
    Conflict,
    Unauthenticated,
    PermissionDenied,
    /// Too many attempts (failed logins): wait and retry.
    TooManyRequests,
    /// The request is larger than allowed.
    TooLarge,
    /// The request's body is not of a type the operation takes.
    UnsupportedMediaType,
    /// The path does not serve this method.
    MethodNotAllowed,
    /// A dependency (database, broker, model) is not reachable right now; retrying may help.
    Unavailable,
    Internal,
}
