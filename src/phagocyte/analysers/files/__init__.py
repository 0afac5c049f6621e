"""Static analysis of documents and binaries: Office (oletools), PDF, PE (pefile), ELF (pyelftools).

Each module is `analyse_<kind>(data, path, limits) -> Verdict`; none of them runs or renders anything.
"""

from phagocyte.analysers.files.elf import analyse_elf
from phagocyte.analysers.files.entropy import entropy
from phagocyte.analysers.files.office import analyse_office
from phagocyte.analysers.files.pdf import analyse_pdf
from phagocyte.analysers.files.pe import analyse_pe

__all__ = ["analyse_elf", "analyse_office", "analyse_pdf", "analyse_pe", "entropy"]
