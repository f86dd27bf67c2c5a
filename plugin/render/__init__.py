"""What people read: CDS Hooks cards (`cards`), the decision and run reports (`report`), and
the `theracharge units` answer (`units_report`). ChargeItems are rendered in fhir_mappings."""
