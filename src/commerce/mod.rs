//! Cart, orders, payments (provider interface: `dev` and Toss Payments), refunds, and the
//! instructor dashboard's figures.

pub mod routes;
