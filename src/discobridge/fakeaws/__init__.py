"""A fake AWS for the demo and the tests: moto's server, an ECS agent simulation, faults, estates."""
