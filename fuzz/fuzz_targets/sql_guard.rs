#![no_main]
//! The SQL API's read-only guard (`crates/query/src/guard.rs`, compiled
//! here as it is): arbitrary text is screened and planned through the
//! guard's first layer in a session shaped like the lake's (the same catalog, schemas,
//! tables and columns, left empty); whatever it accepts must pass the
//! second layer, and nothing may panic.

#[allow(dead_code)]
#[path = "../../crates/query/src/guard.rs"]
mod guard;

use std::sync::{Arc, OnceLock};

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use libfuzzer_sys::fuzz_target;
use shoplake_core::schema::{TABLES, Zone};

fn session() -> &'static SessionContext {
    static CTX: OnceLock<SessionContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = SessionContext::new_with_config(guard::session_config(2));
        let catalog = MemoryCatalogProvider::new();
        for zone in Zone::ALL {
            let schema = MemorySchemaProvider::new();
            for t in TABLES.iter().filter(|t| t.zone == zone) {
                let table = MemTable::try_new(t.schema(), vec![vec![]]).expect("an empty table");
                schema
                    .register_table(t.name.to_string(), Arc::new(table))
                    .expect("one table per name");
            }
            catalog
                .register_schema(zone.name(), Arc::new(schema))
                .expect("one schema per zone");
        }
        ctx.register_catalog(guard::CATALOG, Arc::new(catalog));
        guard::restrict_table_functions(&ctx);
        ctx
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(why) = futures::executor::block_on(guard::first_layer_holds(session(), sql)) {
        panic!("the guard's first layer let through {why}: {sql:?}");
    }
});
