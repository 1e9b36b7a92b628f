"""`gdino bag`'s steps, one module each: ``inputs`` opens what is read (bag folder, bare .mcap) and
``mcap_records`` reads .mcap files past damage, which ``damage`` accounts for; ``sources`` chooses one
image topic per camera; ``messages`` decodes images and builds the output messages; ``output`` writes the
bag so that it is always finalized; ``job`` is the loop from messages in to detections out.
"""
