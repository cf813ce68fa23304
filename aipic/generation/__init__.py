"""Generation: what a person asks for (requests), and the generator families that make pixels from resolved
requests — diffusers text-to-image and img2img, Gatys style transfer — plus the safety checkers' verdicts."""
