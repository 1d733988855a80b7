"""The OVSDB edge: the Southbound view (conditional monitoring) and the local
Open_vSwitch DB, both through ovsdbapp, turned into the core's plain records."""
