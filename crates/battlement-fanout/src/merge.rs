//! Reducing the per-backend results to one response: [`Merge`].

use battlement_core::BoxError;

use crate::response::Responses;

/// Turns a fan-out's [`Responses`] into its response. Any
/// `Fn(Responses<Res>) -> Result<Out, BoxError>` is a merge; [`NoMerge`]
/// (the default) returns the `Responses` as they are.
pub trait Merge<Res> {
    /// The fan-out's response.
    type Output;

    /// Reduces `responses` to one response, or fails the fan-out.
    ///
    /// # Errors
    ///
    /// Whatever error the merge decides the combined result is.
    fn merge(&self, responses: Responses<Res>) -> Result<Self::Output, BoxError>;
}

/// The default merge: the fan-out's response is the [`Responses`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoMerge;

impl<Res> Merge<Res> for NoMerge {
    type Output = Responses<Res>;

    fn merge(&self, responses: Responses<Res>) -> Result<Responses<Res>, BoxError> {
        Ok(responses)
    }
}

impl<Res, Out, F> Merge<Res> for F
where
    F: Fn(Responses<Res>) -> Result<Out, BoxError>,
{
    type Output = Out;

    fn merge(&self, responses: Responses<Res>) -> Result<Out, BoxError> {
        self(responses)
    }
}
