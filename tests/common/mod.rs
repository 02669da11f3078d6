pub mod frames;
pub mod testbed;
