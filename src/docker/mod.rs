pub mod calls;
