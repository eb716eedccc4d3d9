"""discobridge: service discovery for ECS tasks with dynamic host ports."""

__version__ = "0.1.0"
