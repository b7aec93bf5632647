"""The refresher: keeps every region's index and absence rule fresh."""
