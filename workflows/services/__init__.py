"""Transactional services: each public function is one unit of work that commits or changes nothing."""
