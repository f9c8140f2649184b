//! judge
pub mod bisect;
pub mod bisect_state;
pub mod judged;
pub mod matrix;
pub mod plot;
pub mod report;
pub mod verdict;
